"""Scheduler extender: verbs over bytes, the ASGI app, config, and property tests over request bodies."""
