"""lm-eval task templates and local data readers (package data; lm-eval's YAML dialect)."""
