"""The sales dashboard: a page in the browser and the JSON endpoints it reads."""
