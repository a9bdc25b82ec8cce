"""Paddle Serving bundles, a server speaking Paddle Serving's protocol, and Python clients."""
