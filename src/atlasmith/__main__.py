from atlasmith.cli import main

main()
