from toklab.cli import main

main()
