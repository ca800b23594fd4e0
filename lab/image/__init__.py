"""Base images: the recipes and the cached volumes built from them, external images a user imports, and the
publishers' signatures that vouch for them."""
