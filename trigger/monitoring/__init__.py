"""Operating a deployed tagger: label-free drift monitoring of its firmware (`trigger monitor`)."""
