"""Prompt templates of the scoring judges (package data)."""
