"""The course dashboard: one hub service per course that shows its instructors the class.

``report`` reads the course store into a class report (scores, checks, queue), ``charts``
draws its figures as inline SVG, ``grades`` writes the gradebook CSV, and ``service`` serves
it all behind the hub's OAuth to that course's instructors only.
"""

COURSE_ENV = "DEEPGRADE_DASHBOARD_COURSE"  # which course a dashboard service shows
