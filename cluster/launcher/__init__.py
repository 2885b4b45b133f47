"""Ray's cluster launcher (`ray up`) for the farm on AWS and GCP: ``aws.yaml``, ``gcp.yaml``.

``scoring`` is the launcher autoscaler's node-type choice (spot first, on-demand when a
spot launch failed); ``smoke`` is the script ``ray submit`` runs on a fresh cluster.
"""
