"""topolvm-py's own node-driver-registrar (``topolvm-registrar``) and livenessprobe (``topolvm-livenessprobe``).

They take the command-line flags of kubernetes-csi's node-driver-registrar and livenessprobe, so the chart runs
them with the same arguments when ``image.csi.builtinSidecars`` is true (docs/deploy.md, "Builtin sidecars"):
for clusters that pull only topolvm-py's image, and for machines where upstream's Go sidecars cannot be built.
They speak gRPC to the CSI driver and to kubelet and HTTP to the kubelet's probes; nothing else.
"""
