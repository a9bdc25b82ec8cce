"""Paddle Serving's protocol: ``GeneralModelService`` over gRPC and HTTP, and PaddleVideo's video endpoints."""
