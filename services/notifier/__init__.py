"""Tells people (Slack, webhooks, Grafana annotations) when jobs end or backends degrade."""
