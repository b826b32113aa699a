"""ZeroMQ transport: msgpack envelopes, remote actor references, CURVE keys, membership."""
