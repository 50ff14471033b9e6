"""Live use: the keys and the style list a person drives (`controls`)."""
