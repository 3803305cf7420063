"""Measuring the age estimator on labelled photos: label files, metrics, reports and plots."""
