"""Kernel side: BPF programs, their loading, attach-method choice and ring-buffer draining."""
