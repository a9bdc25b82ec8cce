def main(argv=None):
    raise SystemExit("not yet")
quant_main = package_main = main
