"""The smoke suite (marker: smoke): endpoint checks against any vLLM server."""
