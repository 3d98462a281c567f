"""Who is calling: token extraction, provider keys, signature and claim checks, the token cache, the requirement tree."""
