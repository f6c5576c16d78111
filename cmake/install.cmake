# cmake --install: headers under include/megaphone/{fsm,transport,cluster,auth,app}, the static
# libraries with an exported CMake package (find_package(megaphone) -> megaphone::megaphone, and
# megaphone::auth for the token and key checks), the megaphone binary, the browser client in
# share/megaphone/web and the example configuration.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(MEGAPHONE_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/megaphone)
set(MEGAPHONE_INSTALL_WEBDIR ${CMAKE_INSTALL_DATADIR}/megaphone/web)

set_target_properties(megaphone_fsm PROPERTIES EXPORT_NAME fsm)
set_target_properties(megaphone_transport PROPERTIES EXPORT_NAME transport)
set_target_properties(megaphone_cluster PROPERTIES EXPORT_NAME cluster)
set_target_properties(megaphone_auth PROPERTIES EXPORT_NAME auth)
set_target_properties(megaphone_app PROPERTIES EXPORT_NAME megaphone)
add_library(megaphone::megaphone ALIAS megaphone_app)
foreach(lib megaphone_fsm megaphone_transport megaphone_cluster megaphone_auth megaphone_app)
    target_include_directories(${lib} PUBLIC
        $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/megaphone>)
endforeach()

install(TARGETS megaphone_fsm megaphone_transport megaphone_cluster megaphone_auth megaphone_app
    EXPORT megaphoneTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS megaphone RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
foreach(dir fsm transport cluster auth app)
    install(DIRECTORY ${PROJECT_SOURCE_DIR}/${dir} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/megaphone
        FILES_MATCHING PATTERN "*.hpp")
endforeach()
install(DIRECTORY ${PROJECT_SOURCE_DIR}/web/ DESTINATION ${MEGAPHONE_INSTALL_WEBDIR})
install(FILES ${PROJECT_SOURCE_DIR}/examples/megaphone.json
    ${PROJECT_SOURCE_DIR}/examples/systemd/megaphone.service
    DESTINATION ${CMAKE_INSTALL_DATADIR}/megaphone/examples)

install(EXPORT megaphoneTargets NAMESPACE megaphone:: DESTINATION ${MEGAPHONE_INSTALL_CMAKEDIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/megaphoneConfig.cmake.in
    ${PROJECT_BINARY_DIR}/megaphoneConfig.cmake
    INSTALL_DESTINATION ${MEGAPHONE_INSTALL_CMAKEDIR}
    PATH_VARS MEGAPHONE_INSTALL_WEBDIR)
# 0.x: a minor version may break the API.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/megaphoneConfigVersion.cmake
    COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/megaphoneConfig.cmake
    ${PROJECT_BINARY_DIR}/megaphoneConfigVersion.cmake
    DESTINATION ${MEGAPHONE_INSTALL_CMAKEDIR})
