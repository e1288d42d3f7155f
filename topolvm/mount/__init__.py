"""``Mounter`` adapters: ``system`` (mkfs, mount, resize tools; argv only) and ``memory`` (for tests)."""
