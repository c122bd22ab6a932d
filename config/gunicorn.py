"""Gunicorn settings every web command loads (``--config python:config.gunicorn``: the image, compose, bin/serve).

Gunicorn's default access-log line holds the whole request line and the Referer, query strings included: admin
searches (``?q=``) and API filters (``?mrn=``) would put names and MRNs in the log. This format logs the path
without its query string, and no Referer.
"""

# remote address, time, method, path (no query string), protocol, status, bytes, duration in microseconds
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(D)s'
