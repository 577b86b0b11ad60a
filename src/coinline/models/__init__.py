"""Estimators behind one protocol (`models.base.ProbModel`): trees, sequence nets, regime, stacking."""
