"""Command lines of the proof of learning (``python -m synseg_proof.cli.<name>``)."""
