"""Stateful logic over the ports: lvmd today; controller, node and scheduler services as they land."""
