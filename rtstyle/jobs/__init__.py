"""What is built on the stream: a file's conversion (`convert`), folders of files (`batch`), long
videos in segments joined without re-encoding (`segments`), and both on Ray workers (`cluster`)."""
