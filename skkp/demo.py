"""End-to-end demos on built-in synthetic data, used by ``skkp demo``."""
