"""Composition roots: the commands that wire adapters into services and serve them (``topolvm-controller``,
``topolvm-node``). Above every other layer; nothing imports them."""
