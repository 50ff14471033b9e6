"""A web page that stylizes the browser's camera over WebRTC."""

from __future__ import annotations

import argparse
import sys

from ..model.styles import DEFAULT_STYLE
from .common import (
    add_engine_options,
    add_faces_option,
    add_scale_option,
    add_smooth_options,
    engine_config,
    port_number,
    positive_int,
    strength,
    style_options,
)


def add_parser(sub) -> None:
    serve = sub.add_parser("serve", help="a web page that stylizes the browser's camera over WebRTC",
                           description="Serve a page that sends the browser's camera to this machine's engine over "
                                       "WebRTC and shows it stylized (pip install 'rtstyle[serve]').")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: 127.0.0.1; another needs a token)")
    serve.add_argument("--port", type=port_number, default=8080, help="default: 8080 (0: any free port)")
    serve.add_argument("--token", help="secret every request must carry (made up and printed when --host is "
                                       "not local and none is given); 16 characters at least: letters, digits, - _ . ~")
    serve.add_argument("--ice-any-interface", action="store_true",
                       help="offer WebRTC media on every interface, not only loopback, while HTTP is on loopback "
                            "(a browser on another machine through an SSH tunnel); see docs/serve.md")
    serve.add_argument("--max-viewers", type=positive_int,
                       help="viewers served at once; more are refused (default: 1 on a CPU, 4 on a GPU)")
    serve.add_argument("--cert-file", help="HTTPS certificate (browsers give a camera only to https or localhost)")
    serve.add_argument("--key-file", help="HTTPS private key")
    serve.add_argument("--style", help=f"style shown first (default: {DEFAULT_STYLE})")
    serve.add_argument("--styles", help="comma-separated styles for the picker (default: all built-in styles)")
    serve.add_argument("--strength", type=strength, default=1.0, help="starting strength (default: 1)")
    serve.add_argument("--style-image", metavar="PICTURE", help="a picture as the style shown first (the arbitrary "
                                                                "model)")
    serve.add_argument("--style-dir", help="a folder of pictures for the picker (the arbitrary model)")
    add_scale_option(add_engine_options(serve))
    add_smooth_options(serve.add_argument_group("smoothing"))
    add_faces_option(serve)


def run(args: argparse.Namespace) -> int:
    import secrets

    from ..serve.server import ServeConfig, is_loopback, serve_forever

    token = args.token
    if not is_loopback(args.host):
        print(f"rtstyle: warning: listening on {args.host}: whoever reaches port {args.port} can use this "
              "machine's engine; every request needs the token", file=sys.stderr)
        token = token or secrets.token_urlsafe(16)
        if not args.cert_file:
            print("rtstyle: warning: browsers give a camera only to https pages and localhost: add --cert-file and "
                  "--key-file, or use an SSH tunnel (ssh -L 8080:localhost:8080 this-machine)", file=sys.stderr)
    if args.style_dir:
        from ..model.arbitrary import pictures_in

        styles = tuple(pictures_in(args.style_dir))
    else:
        styles = tuple(args.styles.split(",")) if args.styles else ()
    options = style_options(args)
    config = ServeConfig(model=options.model, styles=styles, style=options.style, strength=options.strength,
                         smooth=args.smooth, smooth_strength=args.smooth_strength, scale=args.scale, faces=args.faces,
                         engine=engine_config(args, live=True), host=args.host, port=args.port, token=token,
                         max_viewers=args.max_viewers, cert_file=args.cert_file, key_file=args.key_file,
                         ice_any_interface=args.ice_any_interface)

    def ready(url: str) -> None:
        print(f"rtstyle serve: open {url}  (Ctrl-C to stop)", file=sys.stderr, flush=True)

    try:
        serve_forever(config, ready)
    except KeyboardInterrupt:
        print("rtstyle serve: stopped", file=sys.stderr)
    return 0

