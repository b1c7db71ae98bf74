"""ispring_async: a high-throughput asyncio export client for iSpring Learn learner results."""
