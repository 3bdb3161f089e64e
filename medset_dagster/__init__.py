"""medset_dagster: rebuilds the medical Q&A training dataset with Dagster."""
