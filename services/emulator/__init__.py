"""Local stand-in for IBM Cloud IAM, Global Search/Catalog and the Qiskit Runtime REST API."""
