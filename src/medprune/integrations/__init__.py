"""Integrations of medprune models with application frameworks (LangChain)."""
