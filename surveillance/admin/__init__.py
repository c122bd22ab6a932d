"""The clinician admin: every model registered, scoped to the user's centres, with worklists and a dashboard.

The site is ``site.CartWatchAdminSite`` (installed by ``apps.CartWatchAdminConfig``, which also loads the
registrations once the models are ready).
"""
