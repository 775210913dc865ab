"""Deployable services built on fraudkit: the explanation service and the alert Lambda."""
