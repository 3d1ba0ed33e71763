from hardware.preflight.command import main

main()
