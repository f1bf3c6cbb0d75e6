"""Test doubles that speak real protocols (a local ECS endpoint). Also used by `diagnose demo`."""
