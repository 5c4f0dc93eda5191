// Anchors the precompiled GoogleTest header that the test suites share.
