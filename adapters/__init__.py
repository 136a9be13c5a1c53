"""Vendor adapters: declarations plus pure functions that build requests and read answers."""
