"""Serving a registered model: model references (:mod:`medprune.serve.refs`) and Vertex AI
endpoints with canary rollout, promotion, rollback and multiple regions
(:mod:`medprune.serve.vertex_endpoint`)."""
