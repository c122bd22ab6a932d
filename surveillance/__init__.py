"""CAR-T Watch: long-term surveillance follow-up after CAR T-cell therapy."""
