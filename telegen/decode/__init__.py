"""Raw ring-buffer records to typed events, in batches; malformed records are counted, not raised."""
