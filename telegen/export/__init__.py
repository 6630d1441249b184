"""Export stage: OTLP/gRPC (or console) with bounded per-signal queues, and the Prometheus view."""
