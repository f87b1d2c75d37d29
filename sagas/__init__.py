"""The sagas app: definitions, the engine, the API and the dashboard."""
