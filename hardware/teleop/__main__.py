from hardware.teleop.command import main

main()
