"""The REST edge: HTTP/JSON in front of gRPC services, driven by descriptors and the registry."""
