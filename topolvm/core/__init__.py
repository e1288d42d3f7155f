"""Pure policy: value objects and the formulas every world shares.

Imports only the standard library and ``topolvm.constants``/``topolvm.errors`` (enforced by import-linter), so
the real driver, the in-memory fakes and the simulator all decide the same way.
"""
