"""Task functions behind the root scripts."""
