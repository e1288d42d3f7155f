"""Generated gRPC stubs of kubelet's plugin registration API (pluginregistration.proto; scripts/gen_proto.sh)."""
