"""Live use: the keys and the style switcher a person drives (`controls`), the styles they step through
(`styles`), the camera and the outputs beside the preview (`outputs`), and the session that runs them (`session`)."""
