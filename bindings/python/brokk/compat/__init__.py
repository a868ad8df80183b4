"""Facades that let programs written for other brokers run on brokk.

``brokk.compat.tadween``: Tadween's broker (tadween-core's ``tadween_core.broker``).
"""
