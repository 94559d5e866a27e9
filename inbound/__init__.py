"""Replies by mail: an inbound SMTP receiver (`techconnect inbound`, and `make run`) that posts a
customer's reply to a request mail into the request's thread, or quarantines it with the reason."""
