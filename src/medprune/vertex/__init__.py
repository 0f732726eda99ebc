"""Talking to Vertex AI: SDK setup, pipeline runs and schedules, template uploads."""
