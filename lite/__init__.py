"""Paddle Lite ``.nb`` packaging through the official optimizer."""
