"""The BLEMORE challenge metric (an evaluate module) and the arithmetic it shares with the toolkit."""
