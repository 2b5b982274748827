"""Prompt templates of the AI-feedback stage (package data; see compare.yaml)."""
